"""Build script: the Python package always, the native extension when it can be built.

The extension (``latentfast._C``) is optional: ``import latentfast`` works without it and every op falls back
to its pure-PyTorch reference.  Environment switches (also in the README's table):

  LATENTFAST_NO_EXTENSION=1   build no native code at all
  LATENTFAST_FORCE_CUDA=1     compile the CUDA sources even when no GPU is visible (needs a CUDA torch + CUDA_HOME)
  LATENTFAST_FORCE_ONLY_CPU=1 never compile CUDA sources
"""
import glob
import os

from setuptools import setup


def _truthy(name: str) -> bool:
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def extensions():
    if _truthy("LATENTFAST_NO_EXTENSION"):
        print("latentfast: LATENTFAST_NO_EXTENSION set, building the pure-Python package only")
        return [], {}
    here = os.path.dirname(os.path.abspath(__file__))
    cpu_sources = sorted(glob.glob(os.path.join("csrc", "**", "*.cpp"), recursive=True))
    if not cpu_sources:
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        print("latentfast: torch is not importable at build time (use --no-build-isolation); skipping the extension")
        return [], {}

    cuda_sources = sorted(glob.glob(os.path.join("csrc", "**", "*.cu"), recursive=True))
    # nvcc alone proves nothing: the installed torch must itself be a CUDA build.
    use_cuda = (
        bool(cuda_sources)
        and not _truthy("LATENTFAST_FORCE_ONLY_CPU")
        and torch.version.cuda is not None
        and cpp_extension.CUDA_HOME is not None
        and (torch.cuda.is_available() or _truthy("LATENTFAST_FORCE_CUDA"))
    )
    if use_cuda and not torch.cuda.is_available() and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        # No GPU to ask: name the architectures instead of letting the build guess.
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"

    define_macros = [("WITH_CUDA", None)] if use_cuda else []
    # torch 2.13 headers are C++20.  -fno-trapping-math / -fno-math-errno (as torch itself is built) let GCC
    # if-convert the clamps in the fused distance loop and vectorise it; neither changes any computed value.
    # -ffp-contract=off: no fused multiply-adds anywhere, so the AVX2 clone of the fused pass (target_clones)
    # computes the very values the baseline build does.
    extra_cxx = ["-O3", "-std=c++20", "-fno-trapping-math", "-fno-math-errno", "-ffp-contract=off"]
    openmp = ["-fopenmp"] if os.name != "nt" else ["/openmp"]
    ext_cls = cpp_extension.CUDAExtension if use_cuda else cpp_extension.CppExtension
    sources = cpu_sources + (cuda_sources if use_cuda else [])
    ext = ext_cls(
        name="latentfast._C",
        sources=sources,
        include_dirs=[os.path.join(here, "csrc")],
        define_macros=define_macros,
        extra_compile_args={"cxx": extra_cxx + openmp, "nvcc": ["-O3", "-std=c++20"]} if use_cuda
        else {"cxx": extra_cxx + openmp},
        extra_link_args=openmp,
    )
    return [ext], {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=False)}


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
