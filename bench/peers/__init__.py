"""The benchmark's real peers, BentoML and Seldon MLServer (`registry`): their service code runs in
their own environments and imports only `app.artifact` and `bench.cards` from this repository."""
