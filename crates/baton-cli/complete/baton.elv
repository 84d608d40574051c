
use builtin;
use str;

set edit:completion:arg-completer[baton] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'baton'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'baton'= {
            cand -q 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand --quiet 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand -v 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand --verbose 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand apply 'Bring a service to its spec: write its unit, hand over to the new release, stop the old'
            cand render 'Print the unit file a spec renders to'
            cand schema 'Print the JSON Schema of the spec (or of the result)'
            cand status 'Show a service''s releases: which is active and enabled, its main PID and since when'
            cand observe 'Print a service''s releases with the text of each unit file, as JSON: what the Terraform provider reads on a remote host. Reads only: no lock, no daemon-reload, no write'
            cand adopt 'Print the spec of a deployed service read back from its unit file, as JSON: what `terraform import` reads on a remote host. Reads only'
            cand completions 'Print a shell completion script, e.g. for bash into /etc/bash_completion.d/baton'
            cand man 'Print the man page of baton or of one of its commands (roff), or write them all to a directory'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'baton;apply'= {
            cand --lock-timeout 'Seconds to wait for another run of the same service to finish'
            cand --lock-dir 'Directory of the per-service lock files'
            cand --progress 'Progress on stderr: auto (when stderr is a terminal, or with -v), always or never'
            cand --check 'Plan only: report the actions that would run and touch nothing'
            cand --diff 'Report the text before and after of every unit file written or removed'
            cand -q 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand --quiet 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand -v 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand --verbose 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'baton;render'= {
            cand -q 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand --quiet 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand -v 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand --verbose 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'baton;schema'= {
            cand --result 'The result''s schema instead of the spec''s'
            cand -q 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand --quiet 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand -v 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand --verbose 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'baton;status'= {
            cand --unit-dir 'Where unit files live'
            cand --json 'JSON instead of a table'
            cand -q 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand --quiet 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand -v 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand --verbose 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'baton;observe'= {
            cand --unit-dir 'Where unit files live'
            cand --all 'Also every other service with a release in the unit directory (after the named ones)'
            cand -q 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand --quiet 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand -v 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand --verbose 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'baton;adopt'= {
            cand --unit-dir 'Where unit files live'
            cand -q 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand --quiet 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand -v 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand --verbose 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'baton;completions'= {
            cand -q 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand --quiet 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand -v 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand --verbose 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'baton;man'= {
            cand --dir 'Write every page (baton.1, baton-apply.1, ...) into this directory instead'
            cand -q 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand --quiet 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)'
            cand -v 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand --verbose 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'baton;help'= {
            cand apply 'Bring a service to its spec: write its unit, hand over to the new release, stop the old'
            cand render 'Print the unit file a spec renders to'
            cand schema 'Print the JSON Schema of the spec (or of the result)'
            cand status 'Show a service''s releases: which is active and enabled, its main PID and since when'
            cand observe 'Print a service''s releases with the text of each unit file, as JSON: what the Terraform provider reads on a remote host. Reads only: no lock, no daemon-reload, no write'
            cand adopt 'Print the spec of a deployed service read back from its unit file, as JSON: what `terraform import` reads on a remote host. Reads only'
            cand completions 'Print a shell completion script, e.g. for bash into /etc/bash_completion.d/baton'
            cand man 'Print the man page of baton or of one of its commands (roff), or write them all to a directory'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'baton;help;apply'= {
        }
        &'baton;help;render'= {
        }
        &'baton;help;schema'= {
        }
        &'baton;help;status'= {
        }
        &'baton;help;observe'= {
        }
        &'baton;help;adopt'= {
        }
        &'baton;help;completions'= {
        }
        &'baton;help;man'= {
        }
        &'baton;help;help'= {
        }
    ]
    $completions[$command]
}
