#ifndef PULSEGATE_CLIBUSB_SHIM_H
#define PULSEGATE_CLIBUSB_SHIM_H
// pkg-config libusb-1.0 puts /usr/include/libusb-1.0 on the include path.
#include <libusb.h>
#endif
