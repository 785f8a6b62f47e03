#include "trace/trace-hw_nvme_passthru.h"
