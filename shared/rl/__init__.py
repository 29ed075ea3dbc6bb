"""What the trainer and the executor's RL strategy share: bars, features, costs, the env's
trading configuration and observation layout, and checkpoint inference.

A policy is only as good as the agreement between the bars and observations it was trained on
and the ones it is fed live; keeping both sides on one implementation is what guarantees it.
"""
