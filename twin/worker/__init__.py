"""The live twin: subscribe to observations, run the world model, publish and store predictions,
surprise and anomalies, keep episodic memory; survive restarts (``docs/worker.md``)."""
