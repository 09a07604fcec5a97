"""The reference implementation's formats: its candidate strings and its search logs.

* :mod:`~nos.reference.format` - reader and printer of the reference's string format;
* :mod:`~nos.reference.logs` - reading and importing the reference's search logs.

May import: :mod:`nos.errors`, :mod:`nos.symbolic`; never torch.
"""
