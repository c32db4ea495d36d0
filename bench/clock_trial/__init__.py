"""Clock trial: members under shifted or stepped wall clocks (see __main__)."""
