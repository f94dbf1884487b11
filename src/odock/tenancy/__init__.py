"""Tenancy: organisations, teams, team members and users."""
