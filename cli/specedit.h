/* specedit: change one field of a spec document in its own text, so the
 * user's comments and layout survive `banger vm stop` / `vm start`. */
#ifndef BANGER_SPECEDIT_H
#define BANGER_SPECEDIT_H

#include "spec.h"

/* The text of document raw (whose parsed spec is old) with spec.state set
 * to state.  The edit is checked by parsing it back: when the text cannot
 * be edited in place safely, the document is written anew from the spec
 * (comments are then lost, and *rewritten says so).  Caller frees. */
char *specedit_set_state(const char *raw, const struct bg_spec *old, enum spec_state state, bool *rewritten);

#endif
