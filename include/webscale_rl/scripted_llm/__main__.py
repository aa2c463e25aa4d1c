from webscale_rl.scripted_llm.server import main

main()
