"""`python -m atelier_client detect|embed|verify|stylize ...`: the batch commands where only the client is installed
(with the server, the same commands are `atelier detect ...`)."""

from atelier_client.cli import main

raise SystemExit(main())
