// Catch2 for test files that use libtorch. libtorch's logging (glog) defines
// its own CHECK(), which silently replaces Catch's when torch is included
// after catch.hpp: failures then abort the process instead of being counted
// and reported. Including torch first, dropping glog's CHECK and then Catch
// keeps Catch's. Include this instead of <catch2/catch.hpp>, before any torch header.
#pragma once

#include <torch/torch.h>  // libtorch, with glog's CHECK

#undef CHECK
#include <catch2/catch.hpp>  // Catch2's CHECK from here on
