#ifndef BANGER_VERSION_H
#define BANGER_VERSION_H
#define BANGER_VERSION "0.1.0"
#endif
