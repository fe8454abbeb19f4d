// The one Python module of latentfast's native code: latentfast._C.  Each op adds its functions here.
#include <torch/extension.h>

#include "segment_assign/segment_assign.h"
#include "sfvq_step/sfvq_step.h"
#include "small_linalg/gram_eig.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "latentfast native CPU kernels (see csrc/*/*.h for each op's contract)";
  m.def("segment_assign_cpu_out", &latentfast::segment_assign_cpu_out,
        "Nearest segment / vertex on CPU; writes index, t, distance_sq and the unsure mask (see "
        "csrc/segment_assign/segment_assign.h).",
        py::arg("points"), py::arg("vertices"), py::arg("segments"), py::arg("bound_factor"),
        py::arg("bound_abs"), py::arg("block_rows"), py::arg("num_candidates"), py::arg("index_out"),
        py::arg("t_out"), py::arg("distance_out"), py::arg("unsure_out"),
        py::call_guard<py::gil_scoped_release>());  // pure C++/ATen inside: let other Python threads run
  m.attr("max_candidates") = latentfast::kMaxCandidates;
  m.def("sfvq_step_cpu", &latentfast::sfvq_step_cpu,
        "One SFVQ training step (nearest dithered point, MSE gradient, fused Adam) in place; returns (loss, "
        "status, brute-force rows) (see csrc/sfvq_step/sfvq_step.h).",
        py::arg("vertices"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("x"), py::arg("lam"),
        py::arg("step"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("bound_factor"),
        py::arg("num_candidates"), py::arg("adam_vec_width"), py::arg("adam_fma"), py::arg("index_out"),
        py::arg("shift"), py::arg("workspace"), py::call_guard<py::gil_scoped_release>());
  m.def("gram_eigvalsh_cpu_out", &latentfast::gram_eigvalsh_cpu_out,
        "Eigenvalues (ascending, float64) of M^T M for a batch of small panels M, by batched cyclic Jacobi; "
        "returns the sweeps used (see csrc/small_linalg/gram_eig.h).",
        py::arg("panels"), py::arg("tol"), py::arg("max_sweeps"), py::arg("out"),
        py::call_guard<py::gil_scoped_release>());
  m.attr("gram_eig_max_k") = latentfast::kGramEigMaxK;
}
