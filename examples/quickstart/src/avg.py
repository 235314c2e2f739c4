import sys; print(sum(map(float, open(sys.argv[1]).read().split(','))) / 3)
