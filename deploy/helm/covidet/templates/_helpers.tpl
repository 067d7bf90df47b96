{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "covidet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name: <release>-<chart> unless the release already contains it. */}}
{{- define "covidet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "covidet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "covidet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "covidet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "covidet.labels" -}}
helm.sh/chart: {{ include "covidet.chart" . }}
{{ include "covidet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: inference-server
{{- end }}

{{- define "covidet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "covidet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret that holds the admin token for the restricted Triton APIs. */}}
{{- define "covidet.adminSecretName" -}}
{{- default (printf "%s-admin" (include "covidet.fullname" .)) .Values.security.restrictedApis.existingSecret }}
{{- end }}

{{- define "covidet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* "true" when pods request GPUs. */}}
{{- define "covidet.gpu" -}}
{{- if and (not (hasPrefix "cpu" .Values.profile)) (gt (int .Values.gpu.count) 0) }}true{{ end }}
{{- end }}

{{/* tritonserver flags added to covidet's own (deploy/entrypoint.sh passes them through). */}}
{{- define "covidet.tritonArgs" -}}
{{- $r := .Values.security.restrictedApis }}
{{- if $r.enabled }}
{{- $spec := printf "%s:%s=$(COVIDET_ADMIN_TOKEN)" (join "," $r.apis) $r.header }}
- --grpc-restricted-protocol={{ $spec }}
- --http-restricted-api={{ $spec }}
{{- end }}
{{- if .Values.security.tls.enabled }}
- --grpc-use-ssl=true
- --grpc-server-cert=/etc/covidet/tls/tls.crt
- --grpc-server-key=/etc/covidet/tls/tls.key
{{- if .Values.security.tls.mutual }}
- --grpc-root-cert=/etc/covidet/tls/ca.crt
- --grpc-use-ssl-mutual=true
{{- end }}
{{- end }}
{{- if .Values.triton.summaryLatencies }}
- --metrics-config=summary_latencies=true
{{- end }}
{{- if .Values.triton.logVerbose }}
- --log-verbose={{ .Values.triton.logVerbose }}
{{- end }}
{{- range .Values.triton.extraArgs }}
- {{ . }}
{{- end }}
{{- end }}
