# Calls a C function with debug information (native_hot.c) for about a second.
import ctypes
import sys

library = ctypes.CDLL(sys.argv[1])
library.spin.restype = ctypes.c_uint64
library.spin.argtypes = [ctypes.c_uint64]
total = 0
for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 40):
    total ^= library.spin(3000000)
print("done", total)
