"""Digital subjects: anatomy from tissue templates, the dataset build (Q_h, C_l, Q_l, guides) and its chapter."""
