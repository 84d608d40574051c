
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'baton' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'baton'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'baton' {
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('apply', 'apply', [CompletionResultType]::ParameterValue, 'Bring a service to its spec: write its unit, hand over to the new release, stop the old')
            [CompletionResult]::new('render', 'render', [CompletionResultType]::ParameterValue, 'Print the unit file a spec renders to')
            [CompletionResult]::new('schema', 'schema', [CompletionResultType]::ParameterValue, 'Print the JSON Schema of the spec (or of the result)')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show a service''s releases: which is active and enabled, its main PID and since when')
            [CompletionResult]::new('observe', 'observe', [CompletionResultType]::ParameterValue, 'Print a service''s releases with the text of each unit file, as JSON: what the Terraform provider reads on a remote host. Reads only: no lock, no daemon-reload, no write')
            [CompletionResult]::new('adopt', 'adopt', [CompletionResultType]::ParameterValue, 'Print the spec of a deployed service read back from its unit file, as JSON: what `terraform import` reads on a remote host. Reads only')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script, e.g. for bash into /etc/bash_completion.d/baton')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the man page of baton or of one of its commands (roff), or write them all to a directory')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'baton;apply' {
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'Seconds to wait for another run of the same service to finish')
            [CompletionResult]::new('--lock-dir', '--lock-dir', [CompletionResultType]::ParameterName, 'Directory of the per-service lock files')
            [CompletionResult]::new('--progress', '--progress', [CompletionResultType]::ParameterName, 'Progress on stderr: auto (when stderr is a terminal, or with -v), always or never')
            [CompletionResult]::new('--check', '--check', [CompletionResultType]::ParameterName, 'Plan only: report the actions that would run and touch nothing')
            [CompletionResult]::new('--diff', '--diff', [CompletionResultType]::ParameterName, 'Report the text before and after of every unit file written or removed')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'baton;render' {
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'baton;schema' {
            [CompletionResult]::new('--result', '--result', [CompletionResultType]::ParameterName, 'The result''s schema instead of the spec''s')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'baton;status' {
            [CompletionResult]::new('--unit-dir', '--unit-dir', [CompletionResultType]::ParameterName, 'Where unit files live')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'JSON instead of a table')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'baton;observe' {
            [CompletionResult]::new('--unit-dir', '--unit-dir', [CompletionResultType]::ParameterName, 'Where unit files live')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Also every other service with a release in the unit directory (after the named ones)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'baton;adopt' {
            [CompletionResult]::new('--unit-dir', '--unit-dir', [CompletionResultType]::ParameterName, 'Where unit files live')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'baton;completions' {
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'baton;man' {
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Write every page (baton.1, baton-apply.1, ...) into this directory instead')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress on stderr, whatever --progress says: only the JSON result on stdout (errors still go to stderr)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More on stderr: progress even when stderr is not a terminal (unless --progress never), the unit file''s path, the lock file, the bus address, and how long each step took')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'baton;help' {
            [CompletionResult]::new('apply', 'apply', [CompletionResultType]::ParameterValue, 'Bring a service to its spec: write its unit, hand over to the new release, stop the old')
            [CompletionResult]::new('render', 'render', [CompletionResultType]::ParameterValue, 'Print the unit file a spec renders to')
            [CompletionResult]::new('schema', 'schema', [CompletionResultType]::ParameterValue, 'Print the JSON Schema of the spec (or of the result)')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show a service''s releases: which is active and enabled, its main PID and since when')
            [CompletionResult]::new('observe', 'observe', [CompletionResultType]::ParameterValue, 'Print a service''s releases with the text of each unit file, as JSON: what the Terraform provider reads on a remote host. Reads only: no lock, no daemon-reload, no write')
            [CompletionResult]::new('adopt', 'adopt', [CompletionResultType]::ParameterValue, 'Print the spec of a deployed service read back from its unit file, as JSON: what `terraform import` reads on a remote host. Reads only')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script, e.g. for bash into /etc/bash_completion.d/baton')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the man page of baton or of one of its commands (roff), or write them all to a directory')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'baton;help;apply' {
            break
        }
        'baton;help;render' {
            break
        }
        'baton;help;schema' {
            break
        }
        'baton;help;status' {
            break
        }
        'baton;help;observe' {
            break
        }
        'baton;help;adopt' {
            break
        }
        'baton;help;completions' {
            break
        }
        'baton;help;man' {
            break
        }
        'baton;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
