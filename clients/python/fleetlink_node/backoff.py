"""The retry schedule: exponential backoff with jitter (the same rule as the TypeScript agent's util/backoff)."""

import random


class Backoff:
    """Delays in seconds: initial × factor^n capped at maximum; `jitter` is the random share of each delay."""

    def __init__(self, initial, maximum, factor=2.0, jitter=1.0):
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = min(1.0, max(0.0, jitter))
        self.attempts = 0

    def next(self):
        d = min(self.maximum, self.initial * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        return d * (1 - self.jitter * random.random())

    def reset(self):
        self.attempts = 0


# The schedules, in seconds (the TypeScript agent's src/node/schedules.ts).
def enroll_backoff():
    return Backoff(0.2, 5.0)


def reconnect_backoff():
    return Backoff(0.1, 3.0)


def pending_backoff():
    """Waiting for an admin's approval: gently, not a reconnect storm."""
    return Backoff(2.0, 5.0, jitter=0.5)


def replaced_backoff():
    """Another process uses this identity: back off hard (2 s doubling to 30 s)."""
    return Backoff(2.0, 30.0, jitter=0.25)


def reply_backoff():
    return Backoff(0.2, 5.0)
