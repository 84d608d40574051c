# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_baton_global_optspecs
    string join \n q/quiet v/verbose h/help V/version
end

function __fish_baton_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_baton_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_baton_using_subcommand
    set -l cmd (__fish_baton_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c baton -n "__fish_baton_needs_command" -s q -l quiet -d 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
complete -c baton -n "__fish_baton_needs_command" -s v -l verbose -d 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file\'s path, the lock file, the bus address, and how long each step took'
complete -c baton -n "__fish_baton_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c baton -n "__fish_baton_needs_command" -s V -l version -d 'Print version'
complete -c baton -n "__fish_baton_needs_command" -f -a "apply" -d 'Bring a service to its spec: write its unit, hand over to the new release, stop the old'
complete -c baton -n "__fish_baton_needs_command" -f -a "render" -d 'Print the unit file a spec renders to'
complete -c baton -n "__fish_baton_needs_command" -f -a "schema" -d 'Print the JSON Schema of the spec (or of the result)'
complete -c baton -n "__fish_baton_needs_command" -f -a "status" -d 'Show a service\'s releases: which is active and enabled, its main PID and since when'
complete -c baton -n "__fish_baton_needs_command" -f -a "observe" -d 'Print a service\'s releases with the text of each unit file, as JSON: what the Terraform provider reads on a remote host. Reads only: no lock, no daemon-reload, no write'
complete -c baton -n "__fish_baton_needs_command" -f -a "adopt" -d 'Print the spec of a deployed service read back from its unit file, as JSON: what `terraform import` reads on a remote host. Reads only'
complete -c baton -n "__fish_baton_needs_command" -f -a "completions" -d 'Print a shell completion script, e.g. for bash into /etc/bash_completion.d/baton'
complete -c baton -n "__fish_baton_needs_command" -f -a "man" -d 'Print the man page of baton or of one of its commands (roff), or write them all to a directory'
complete -c baton -n "__fish_baton_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c baton -n "__fish_baton_using_subcommand apply" -l lock-timeout -d 'Seconds to wait for another run of the same service to finish' -r
complete -c baton -n "__fish_baton_using_subcommand apply" -l lock-dir -d 'Directory of the per-service lock files' -r -F
complete -c baton -n "__fish_baton_using_subcommand apply" -l progress -d 'Progress on stderr: auto (when stderr is a terminal, or with -v), always or never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c baton -n "__fish_baton_using_subcommand apply" -l check -d 'Plan only: report the actions that would run and touch nothing'
complete -c baton -n "__fish_baton_using_subcommand apply" -l diff -d 'Report the text before and after of every unit file written or removed'
complete -c baton -n "__fish_baton_using_subcommand apply" -s q -l quiet -d 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
complete -c baton -n "__fish_baton_using_subcommand apply" -s v -l verbose -d 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file\'s path, the lock file, the bus address, and how long each step took'
complete -c baton -n "__fish_baton_using_subcommand apply" -s h -l help -d 'Print help'
complete -c baton -n "__fish_baton_using_subcommand render" -s q -l quiet -d 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
complete -c baton -n "__fish_baton_using_subcommand render" -s v -l verbose -d 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file\'s path, the lock file, the bus address, and how long each step took'
complete -c baton -n "__fish_baton_using_subcommand render" -s h -l help -d 'Print help'
complete -c baton -n "__fish_baton_using_subcommand schema" -l result -d 'The result\'s schema instead of the spec\'s'
complete -c baton -n "__fish_baton_using_subcommand schema" -s q -l quiet -d 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
complete -c baton -n "__fish_baton_using_subcommand schema" -s v -l verbose -d 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file\'s path, the lock file, the bus address, and how long each step took'
complete -c baton -n "__fish_baton_using_subcommand schema" -s h -l help -d 'Print help'
complete -c baton -n "__fish_baton_using_subcommand status" -l unit-dir -d 'Where unit files live' -r -F
complete -c baton -n "__fish_baton_using_subcommand status" -l json -d 'JSON instead of a table'
complete -c baton -n "__fish_baton_using_subcommand status" -s q -l quiet -d 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
complete -c baton -n "__fish_baton_using_subcommand status" -s v -l verbose -d 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file\'s path, the lock file, the bus address, and how long each step took'
complete -c baton -n "__fish_baton_using_subcommand status" -s h -l help -d 'Print help'
complete -c baton -n "__fish_baton_using_subcommand observe" -l unit-dir -d 'Where unit files live' -r -F
complete -c baton -n "__fish_baton_using_subcommand observe" -l all -d 'Also every other service with a release in the unit directory (after the named ones)'
complete -c baton -n "__fish_baton_using_subcommand observe" -s q -l quiet -d 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
complete -c baton -n "__fish_baton_using_subcommand observe" -s v -l verbose -d 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file\'s path, the lock file, the bus address, and how long each step took'
complete -c baton -n "__fish_baton_using_subcommand observe" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c baton -n "__fish_baton_using_subcommand adopt" -l unit-dir -d 'Where unit files live' -r
complete -c baton -n "__fish_baton_using_subcommand adopt" -s q -l quiet -d 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
complete -c baton -n "__fish_baton_using_subcommand adopt" -s v -l verbose -d 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file\'s path, the lock file, the bus address, and how long each step took'
complete -c baton -n "__fish_baton_using_subcommand adopt" -s h -l help -d 'Print help'
complete -c baton -n "__fish_baton_using_subcommand completions" -s q -l quiet -d 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
complete -c baton -n "__fish_baton_using_subcommand completions" -s v -l verbose -d 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file\'s path, the lock file, the bus address, and how long each step took'
complete -c baton -n "__fish_baton_using_subcommand completions" -s h -l help -d 'Print help'
complete -c baton -n "__fish_baton_using_subcommand man" -l dir -d 'Write every page (baton.1, baton-apply.1, ...) into this directory instead' -r -F
complete -c baton -n "__fish_baton_using_subcommand man" -s q -l quiet -d 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
complete -c baton -n "__fish_baton_using_subcommand man" -s v -l verbose -d 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file\'s path, the lock file, the bus address, and how long each step took'
complete -c baton -n "__fish_baton_using_subcommand man" -s h -l help -d 'Print help'
complete -c baton -n "__fish_baton_using_subcommand help; and not __fish_seen_subcommand_from apply render schema status observe adopt completions man help" -f -a "apply" -d 'Bring a service to its spec: write its unit, hand over to the new release, stop the old'
complete -c baton -n "__fish_baton_using_subcommand help; and not __fish_seen_subcommand_from apply render schema status observe adopt completions man help" -f -a "render" -d 'Print the unit file a spec renders to'
complete -c baton -n "__fish_baton_using_subcommand help; and not __fish_seen_subcommand_from apply render schema status observe adopt completions man help" -f -a "schema" -d 'Print the JSON Schema of the spec (or of the result)'
complete -c baton -n "__fish_baton_using_subcommand help; and not __fish_seen_subcommand_from apply render schema status observe adopt completions man help" -f -a "status" -d 'Show a service\'s releases: which is active and enabled, its main PID and since when'
complete -c baton -n "__fish_baton_using_subcommand help; and not __fish_seen_subcommand_from apply render schema status observe adopt completions man help" -f -a "observe" -d 'Print a service\'s releases with the text of each unit file, as JSON: what the Terraform provider reads on a remote host. Reads only: no lock, no daemon-reload, no write'
complete -c baton -n "__fish_baton_using_subcommand help; and not __fish_seen_subcommand_from apply render schema status observe adopt completions man help" -f -a "adopt" -d 'Print the spec of a deployed service read back from its unit file, as JSON: what `terraform import` reads on a remote host. Reads only'
complete -c baton -n "__fish_baton_using_subcommand help; and not __fish_seen_subcommand_from apply render schema status observe adopt completions man help" -f -a "completions" -d 'Print a shell completion script, e.g. for bash into /etc/bash_completion.d/baton'
complete -c baton -n "__fish_baton_using_subcommand help; and not __fish_seen_subcommand_from apply render schema status observe adopt completions man help" -f -a "man" -d 'Print the man page of baton or of one of its commands (roff), or write them all to a directory'
complete -c baton -n "__fish_baton_using_subcommand help; and not __fish_seen_subcommand_from apply render schema status observe adopt completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
