"""Omniglot unique-class counting (paper section 5.2): how many distinct characters are in a set?"""
