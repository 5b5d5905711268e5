#pragma once
// reuseformer with Eigen 3.4 (Debian: libeigen3-dev; the CMake target finds it,
// links Eigen3::Eigen and defines REUSEFORMER_HAS_EIGEN, upon which the
// umbrella header includes this one):
//   eigen/interop.hpp   zero-copy conversions between tensor_view and Eigen
//                       matrices, maps, refs and tensors; weights from Eigen matrices
//   eigen/products.hpp  eigen::products, the layers' Eigen product backend

#include "reuseformer/eigen/interop.hpp"
#include "reuseformer/eigen/products.hpp"
