"""Build of the C extension: the core library (src/) compiled together with the binding.

Switches (environment variables):
  SHAREDMAP_SANITIZE=1  build with AddressSanitizer + UndefinedBehaviorSanitizer
                        (run Python with LD_PRELOAD of libasan then)
  SHAREDMAP_DEBUG=1     -O0 -g3, assertions on
  SHAREDMAP_WERROR=1    turn warnings into errors (the test build does)
"""
import glob
import os

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def flag(name):
    return os.environ.get(name, "") not in ("", "0")


def files(folder, pattern):
    """The files of folder that match, relative to this directory: the sdist takes only relative
    paths from sources and depends (an absolute one was left out, and the headers with it)."""
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, folder, pattern)))


cflags = [
    "-std=c11",
    "-D_GNU_SOURCE",
    "-fvisibility=hidden",
    "-Wall",
    "-Wextra",
    "-Wconversion",
    "-Wsign-compare",
    "-Wshadow",
    "-Wstrict-prototypes",
    "-Wmissing-prototypes",
]
cflags.append("-pthread")  # layout.c's two threads (libpthread before glibc 2.34)
ldflags = ["-pthread"]
if flag("SHAREDMAP_WERROR"):
    cflags.append("-Werror")
if flag("SHAREDMAP_DEBUG"):
    cflags += ["-O0", "-g3", "-UNDEBUG"]
else:
    cflags += ["-O2"]
if flag("SHAREDMAP_SANITIZE"):
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
    cflags += san
    ldflags += san

# the binding (python/binding/, one file per job) and the core library (src/)
sources = files("python/binding", "*.c") + files("src", "*.c")

setup(
    ext_modules=[
        Extension(
            "sharedmap._sharedmap",
            sources=sources,
            include_dirs=["include", "src", "python/binding"],
            define_macros=[("SM_STATIC", "1")],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
            depends=files("python/binding", "*.h") + files("src", "*.h") + ["include/sharedmap.h"],
        )
    ]
)
