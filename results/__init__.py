# The study's committed results (one CSV per grid). pyproject.toml installs this folder as the
# package attn_course.results, so that attn_course.study.load_results finds it in Colab too.
