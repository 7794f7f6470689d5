"""Result files, text tables and plots."""
