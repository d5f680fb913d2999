from regserve.cli.main import main

main()
