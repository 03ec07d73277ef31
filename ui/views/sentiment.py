from ui.text_page import render

render(
    "sentiment",
    "Movie review sentiment",
    {
        "Glowing": "A wonderful film: sharp writing, a moving score and the best performance of the year.",
        "Scathing": "Two hours I will never get back. Wooden acting, a plot full of holes and a limp ending.",
        "Mixed": "Gorgeous to look at, but the story drags and the characters never come alive.",
    },
)
