"""The Learning Challenge Diagnosticator on Procgen: how much of a game's difficulty is perceptual and how
much is reinforcement learning. The console command is ``rldiag``."""
