"""`python -m covidet.cli` = `covidet`."""

from covidet.cli._main import main

raise SystemExit(main())
