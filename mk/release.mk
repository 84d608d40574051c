# The shipped binaries: size-tuned, portable to glibc 2.17.
