from promptcast.cli import main

raise SystemExit(main())
