// The one Python module of latentfast's native code: latentfast._C.  Each op adds its functions here.
#include <torch/extension.h>

#include "segment_assign/segment_assign.h"

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
}
