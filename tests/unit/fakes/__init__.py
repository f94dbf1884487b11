"""Tests of the fake upstream servers themselves."""
