/*
 * main.c — `partyd`: read the configuration, run the node.
 */
#include <stdlib.h>

#include "base.h"
#include "node.h"

int main(int argc, char **argv)
{
    config_t conf;
    int r = config_from_args(&conf, argc, argv);
    if (r != 0) {
        config_dispose(&conf);
        return r > 0 ? EXIT_SUCCESS : 2;
    }
    log_set_level((log_level_t)conf.log_level);
    int status = node_run(&conf);
    config_dispose(&conf);
    return status;
}
