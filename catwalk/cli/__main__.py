from catwalk.cli import main

main()
