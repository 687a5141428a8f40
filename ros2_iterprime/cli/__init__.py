"""The `ros2_iterprime` command: one module per subcommand, registered into the entry module.

    ros2_iterprime segment IMAGE "the red cup behind the laptop" -o out/
    ros2_iterprime download | eval | bench ...

`main` (the console script's entry) builds the parser from every subcommand that registered itself with
`common.subcommand`: it imports each module of this package, and each module adds its own parser. A
subcommand module imports `common` (the registry and the options several commands share), never
`main`. This folder sits on top of the import order: it may use every other folder except `ros`
(the ROS adapter has its own executable); nothing else imports it.
"""
