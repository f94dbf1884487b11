"""Identity for the control plane: passwords, sessions, admin API tokens, invitations, sign-in."""
