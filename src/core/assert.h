/*
 * ALWAYS(x) / NEVER(x) document invariants and still defend them: in debug
 * builds (MOAT_DEBUG) a broken invariant aborts; in release builds the macro
 * returns the truth of x so the caller takes the safe branch (SQLite style).
 */
#ifndef MOAT_ASSERT_H
#define MOAT_ASSERT_H

#include <stdlib.h>

#ifdef MOAT_DEBUG
#define ALWAYS(x) ((x) ? 1 : (abort(), 0))
#define NEVER(x) ((x) ? (abort(), 1) : 0)
#else
#define ALWAYS(x) (!!(x))
#define NEVER(x) (!!(x))
#endif

#define MOAT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
