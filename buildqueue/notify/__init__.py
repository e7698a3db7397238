"""Notifications (SPEC §8): push, build and deploy events, delivered by `gitserve serve` only.

events.py     whoever sees an event (push hook, the end of a build, the deploy job) records it
notifier.py   the server's delivery of each event (webhook.py signed POST, mailer.py SMTP),
              text from format.py, one line per delivery in deliverylog.py (HOME/logs/notify.log)
"""
