"""PayEasy's payment domain: money, cards, requests, statuses, routing and the ports to the outside world.

Nothing in this package knows about Lambda or API Gateway; the handlers in ``functions/`` adapt events to it.
"""
