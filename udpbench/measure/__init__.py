"""The library API: one function per measurement, options in, a typed result out; never prints."""
