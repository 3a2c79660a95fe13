"""How a run trains, by name: the values of ``train_mode``, ``train_windows`` and
``train_batch_order`` (:mod:`recbole_mamba.config` checks them; the data and the trainer act on
them). A leaf module: imports nothing of the plugin, so every layer may use it."""

PREFIX, ALL_POSITIONS, AUTO = "prefix", "all_positions", "auto"
TRAIN_MODES = (PREFIX, ALL_POSITIONS)
ALL_POSITIONS_ABOVE = 200  # train_mode auto: all_positions when MAX_ITEM_LIST_LENGTH is longer
TRAIN_WINDOWS = ("all", "last")  # all_positions: every window of a user's history, or the last one
TRAIN_BATCH_ORDERS = ("random", "length")  # all_positions: batches of random rows, or of rows of similar length
