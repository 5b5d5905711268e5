#pragma once
// reuseformer with Eigen 3.4 (Debian: libeigen3-dev; the CMake target finds it
// and links Eigen3::Eigen). Not part of reuseformer/reuseformer.hpp, so that a
// program that uses the layers alone does not compile Eigen:
//   eigen/interop.hpp   zero-copy conversions between tensor_view and Eigen
//                       matrices, maps, refs and tensors; weights from Eigen matrices
//   eigen/products.hpp  eigen::products, the layers' Eigen product backend

#include "reuseformer/eigen/interop.hpp"
#include "reuseformer/eigen/products.hpp"
