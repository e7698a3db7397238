"""Notifications (SPEC §8): push, build and deploy events, delivered by `gitserve serve` only.

events.py     whoever sees an event (push hook, the end of a build, the deploy job) queues it
              as an rq job on the `notify` queue
notifier.py   the jobs that deliver it (webhook.py signed POST, mailer.py SMTP; rq retries
              them), text from format.py, one line per delivery in deliverylog.py
service.py    serve's notify workers, the only ones working the `notify` queue
"""
