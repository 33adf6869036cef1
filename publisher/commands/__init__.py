"""One module per `lcm` sub-command group."""
