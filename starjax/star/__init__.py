"""The STaR outer loop: generate -> verify -> rationalize -> assemble -> fine-tune -> evaluate."""
