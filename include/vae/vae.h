// Umbrella header for libvae. Plain C++17: no CUDA header is needed to include it.
#pragma once
#include "vae/backend.h"
#include "vae/batch_stream.h"
#include "vae/checkpoint.h"
#include "vae/config.h"
#include "vae/data.h"
#include "vae/error.h"
#include "vae/io.h"
#include "vae/layout.h"
#include "vae/linear_gaussian.h"
#include "vae/pictures.h"
#include "vae/rng.h"
#include "vae/trainer.h"
