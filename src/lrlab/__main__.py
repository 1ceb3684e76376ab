from lrlab.cli import main

raise SystemExit(main())
