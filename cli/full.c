/* full: the parts only banger-full carries (see cli_full_parts in cli.h). */
#include "cli.h"
#include "workspace.h"

const struct cli_full_parts cli_full = {
        .kernel = cmd_kernel,
        .image = cmd_image,
        .workspace_list = workspace_list,
};
