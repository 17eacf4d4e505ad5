#include "workflowd/daemon/cli.hpp"

int main(int argc, char** argv) { return workflowd::daemon::RunCli(argc, argv); }
