"""Logs, metrics and notifications: how an unattended pgkeep tells people what happened."""
