# Dies by SIGSEGV in native code after its hot loop has been compiled: the
# crash record (CRSH) of a bundle, for the tests that read one.
import ctypes


def spin(n):
    s = 0
    for i in range(n):
        s += i % 3
    return s


print(spin(3000000))
ctypes.memset(0, 1, 8)
