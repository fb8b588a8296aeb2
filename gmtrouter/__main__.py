from gmtrouter.cli import main

main()
