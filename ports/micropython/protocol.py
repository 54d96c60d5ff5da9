# edgesim protocol: the limits and codes the host (ports/*.py) and the board (ports/micropython/*.py)
# share. Sent to the board as it is; the host imports it as ports.micropython.protocol. Plain integers
# only, so MicroPython 1.9 (micro:bit), MicroPython 1.25 (the twins) and CPython all read it. The host
# checks a workload against these limits before it boots anything.

# --- micro:bit v1 MLP port (mlp.py, srv.py) ---
MLP_MAX_LAYERS = 5        # dense layers (mlp.py keeps one weight/bias slot per layer)
MLP_OPS_PER_LAYER = 5     # forward, relu backward, dW, dx, update (the first layer has no dx, the last no relu)
MLP_MAX_OPS = 25          # ops of one step: input copy + loss + 5 per layer - 2 <= MLP_MAX_OPS
LINE_BYTES = 120          # srv.py's line buffer: the longest line the host may send
FLOATS_PER_LINE = 12      # weights per data line (8 hex digits each + the header fit in LINE_BYTES)

# --- twin network port (net.py, netk.py) ---
NET_MAX_LAYERS = 24       # layers of the model, views (flatten) included
NET_GEOM = 14             # integers per layer in the geometry table
NET_MAX_OPS = 160         # ops of one step
NET_OP_WIDTH = 6          # integers per op: code, layer, four buffer slots (-1: none)
NET_MAX_SLOTS = 96        # buffers a step allocates (activations, gradients, workspaces)
NET_MAX_FREES = 192       # buffer releases in one step (each slot is freed once)
NET_FLOATS_PER_CALL = 256 # floats per parameter/sample transfer call
NET_MAX_CODE_BYTES = 4096 # longest command the host sends through the raw REPL

# op codes of a step program (net.py)
OP_LOAD = 0               # sample -> input buffer
OP_FWD = 1                # forward of a layer
OP_LOSS = 2               # softmax cross-entropy: logits -> gradient
OP_ACT = 3                # fused ReLU's backward, in place
OP_WGRAD = 4              # weight and bias gradients of a layer
OP_DX = 5                 # gradient w.r.t. the layer's input
OP_UPD = 6                # SGD (momentum) update of a layer's parameters

# layer kinds (geometry table, word 0)
L_DENSE = 1
L_CONV = 2
L_DW = 3
L_MAXPOOL = 4
L_AVGPOOL = 5
L_GAP = 6
L_FLATTEN = 7

# answers
STEP_FAILED = 'X'         # a step that started and failed half-way: never run again
